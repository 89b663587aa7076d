"""Size and time of the HTML report (bulkops/htmlreport.py) beside the CSV report, for jobs of
N rows (one in five failed with a Telnyx error, an hour's series), on a journal built directly.

    python -m bench.html_report_size 10000 100000 1000000
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bulkops.htmlreport import write_html_report
from bulkops.journal.records import SeriesPoint
from bulkops.journal.states import ItemState
from bulkops.models import ApiErrorInfo
from bulkops.report import write_report
from tests.journal_kit import loaded, upd

ERROR = ApiErrorInfo(422, "10015", "Invalid messaging profile",
                     "The messaging profile is not usable for this number: " + "x" * 80)


async def measure(rows: int) -> str:
    folder = Path(tempfile.mkdtemp(prefix="bulkops-bench-"))
    try:
        journal = await loaded(folder / "a.db", rows)
        for i in range(rows):
            failed = i % 5 == 0
            journal.record(upd(i, ItemState.PENDING, ItemState.IN_FLIGHT))
            journal.record(upd(i, ItemState.IN_FLIGHT, ItemState.FAILED if failed else ItemState.DONE,
                               attempts=1, http_status=422 if failed else 200,
                               error=ERROR if failed else None))
            if i % 20_000 == 0:
                await journal.flush()
        await journal.flush()
        for s in range(0, 3600, 2):
            await journal.add_point(1, SeriesPoint(1_800_000_000 + s, 2, requests=6, answers_2xx=5,
                                                   answers_4xx=1, done=2, failed=1, rate_limit=3.0))
        started = time.perf_counter()
        await write_report(journal, 1, folder / "a.csv")
        csv_s = time.perf_counter() - started
        started = time.perf_counter()
        page = await write_html_report(journal, 1, folder / "a.html")
        html_s = time.perf_counter() - started
        await journal.close()
        return (f"rows={rows} csv={csv_s:.2f}s html={html_s:.2f}s html_size={page.size} "
                f"lines_in_page={page.rows}")
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    for count in map(int, sys.argv[1:] or ["10000"]):
        print(asyncio.run(measure(count)))
