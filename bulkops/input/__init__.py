"""CSV and job files in: rows, headers, phone numbers, job files, loading into the journal."""
