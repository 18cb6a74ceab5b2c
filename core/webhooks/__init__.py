"""Webhooks: a signed POST of a job's final record to the URL its spec gave, retried for a day.

``urls`` checks URLs (at submit and at every delivery), ``signing`` holds the tenants' secrets
and the Standard Webhooks signatures, ``transport`` sends one request to a checked address, and
``delivery`` records and retries attempts. Only the URL check is imported here, so that the job
service (which checks URLs at submit) and ``delivery`` (which reads jobs) do not import each
other in a circle."""

from core.webhooks.urls import check_webhook_url

__all__ = ["check_webhook_url"]
