"""Offline rescoring's parts that need no Ray: reading inputs with row numbers and content
fingerprints (`reader`), where outputs live (`store`: local, shared or `s3://`), the run's
bookkeeping (`plan`: manifest, chunks, retries), flattening results (`results`), the report
(`report`), and Bedrock batch inference (`bedrock_batch`)."""

__all__: list[str] = []
