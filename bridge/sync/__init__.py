"""The subscription syncer: Open Dental client, pure plan, apply, the daemon loop, reports."""
