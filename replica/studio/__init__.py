"""The contributors' studio: record demonstrations, review a replica, manage consent, see earnings.

A local web app (FastAPI, server-rendered Jinja2 pages) over one run directory. It writes the same
records `replica data` reads, through `data`'s validators; see docs/studio.md.
"""
