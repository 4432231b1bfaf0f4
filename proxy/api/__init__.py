"""One blueprint module per API area; registered by proxy.app.BLUEPRINTS."""
