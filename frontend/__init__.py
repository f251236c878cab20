"""trustlab frontend: Streamlit dashboard."""
