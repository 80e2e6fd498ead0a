"""Import paths kept from the Scaler library, so its users' code runs unchanged."""
