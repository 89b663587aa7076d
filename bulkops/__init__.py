"""bulkops: resumable, rate-limit-aware bulk messaging-profile jobs for Telnyx numbers."""

__version__ = "0.1.0"
