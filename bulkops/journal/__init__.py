"""The SQLite journal: records, states, SQL statements, the file format and the Journal class."""
