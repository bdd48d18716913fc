"""The dashboard's CSS: given to each HTML pane (Panel renders them in shadow DOM)."""

#: Candle colours: a rising and a falling bar.
UP = "#16a34a"
DOWN = "#dc2626"

CSS = """
.kit-bar{display:flex;align-items:center;gap:14px;font-family:system-ui,sans-serif}
.kit-brand{font-weight:700;font-size:1.35em;color:#0f766e}
.kit-badge{display:inline-block;padding:3px 10px;border-radius:999px;color:#fff;font-weight:700;font-size:.85em;
 letter-spacing:.04em;font-family:system-ui,sans-serif}
.kit-replay{background:#b45309}.kit-live{background:#16a34a}
.kit-user{color:#374151;font-family:system-ui,sans-serif}.kit-user a{color:#0f766e;margin-left:10px}
.kit-sym{font-weight:600;color:#374151;font-family:system-ui,sans-serif}
.kit-last{font-size:1.5em;font-weight:700;font-family:ui-monospace,monospace;color:#111827}
.kit-change{font-weight:600;font-family:ui-monospace,monospace}
.kit-label{color:#6b7280;font-family:system-ui,sans-serif}
.kit-h{margin:6px 0 2px 0;font-family:system-ui,sans-serif;color:#1f2937}
.kit-err{color:#b91c1c;font-family:system-ui,sans-serif}.kit-ok{color:#15803d;font-family:system-ui,sans-serif}
.kit-conn{font-weight:700;font-family:system-ui,sans-serif}.kit-conn-connected{color:#15803d}
.kit-conn-connecting,.kit-conn-reconnecting{color:#b45309}.kit-conn-stale,.kit-conn-refused{color:#b91c1c}
.kit-age{color:#6b7280;font-family:system-ui,sans-serif;margin-left:8px}
.kit-glance-t{border-collapse:collapse;font-family:system-ui,sans-serif;font-size:.92em;margin-bottom:6px}
.kit-glance-t th,.kit-glance-t td{padding:3px 14px 3px 0;text-align:left;border-bottom:1px solid #e5e7eb}
.kit-glance-t th{color:#6b7280;font-weight:600}.kit-num{font-family:ui-monospace,monospace}
.kit-note{color:#b91c1c;font-family:system-ui,sans-serif;margin-left:8px}
"""
