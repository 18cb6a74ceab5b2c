"""The colours of the page. Each kind of plot has a plot area of its own faint tint, so the page can
be checked (and read) plot by plot."""

BASELINE_COLOR = "#6b7280"
CANDIDATE_COLORS = ("#2563eb", "#d97706", "#16a34a", "#db2777", "#0891b2", "#7c3aed", "#92400e", "#4d7c0f")
PARETO_COLOR = "#dc2626"
FLAG_COLOR = "#b91c1c"
BEST_FILL = "#facc15"
BEST_STROKE = "#854d0e"
KEPT_FLOAT_COLOR = "#ea580c"
QUANTIZED_COLOR = "#0f766e"
GRID_COLOR = "#e5e7eb"
AXIS_COLOR = "#9ca3af"
TEXT_COLOR = "#374151"
MUTED_COLOR = "#6b7280"
INK_COLOR = "#111827"
SCATTER_TINT = "#f3f7fd"
DISTRIBUTION_TINT = "#f8f4fc"
SENSITIVITY_TINT = "#f7f8ec"
