"""The export formats ingest reads, by the names `ingest --format` and the landing zone use.

Apart from the parsers so the command line declares its options without importing them and
the data stack they need.
"""

TABLE_FORMATS = ("csv", "tsv", "parquet", "jsonl")
FORMATS = ("label-studio", "sagemaker-gt", *TABLE_FORMATS)
