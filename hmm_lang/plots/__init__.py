"""Figures. Every function returns a plotly ``go.Figure`` and never shows it."""
