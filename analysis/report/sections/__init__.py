"""One module a section of the report, each with ``build(ctx)`` (``analysis.report``)."""
