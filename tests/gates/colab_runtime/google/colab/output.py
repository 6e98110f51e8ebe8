"""``google.colab.output``: the widget-manager switches (no-ops outside Colab's front end)."""


def enable_custom_widget_manager() -> None:
    """Colab: let third-party ipywidgets render. Here: nothing to do."""


def disable_custom_widget_manager() -> None:
    """Colab: back to the default widget manager. Here: nothing to do."""
