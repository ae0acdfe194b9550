"""Delivery channels: the client-messages stream (default, exactly once, inside
Redis), e-mail over SMTP and signed webhooks (outside Redis: see base.py)."""
