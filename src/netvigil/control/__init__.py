"""The control helper: an uncensored vantage answering OONI's Web Connectivity test-helper request."""
