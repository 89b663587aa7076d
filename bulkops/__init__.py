"""bulkops: resumable, rate-limit-aware bulk messaging-profile jobs for Telnyx numbers.

The library's entry points, each one async function the CLI calls (see ``bulkops.jobs``)::

    result = await bulkops.run_job(JobRequest(...), RunSettings(...), Secret(key))
"""

__version__ = "0.1.0"

# After __version__: the HTTP client reads it while these imports run.
from bulkops.config import RunSettings, Secret
from bulkops.execute import JobResult
from bulkops.jobs import (
    JobRequest, JobStatus, job_status, plan_job, report_job, retry_failed, rollback, run_job, validate_file,
)
from bulkops.jobs import export_numbers, list_profiles


__all__ = ["__version__", "RunSettings", "Secret", "JobRequest", "JobResult", "JobStatus",
           "run_job", "plan_job", "validate_file", "job_status", "report_job", "retry_failed",
           "rollback", "list_profiles", "export_numbers"]
