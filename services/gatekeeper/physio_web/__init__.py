"""The physio web app (app.py, a Starlette app the gatekeeper mounts at /physio):
who signs in (access.py, credentials.py), the needs-attention queue (overview.py),
plain words (views.py), the chart (chart.py), Jinja2 templates (templates/) and
the stylesheet (static/). It reads the audit trail through `gatekeeper.audit` and
acts only by publishing `clinician.action` events, as any clinic system does."""
