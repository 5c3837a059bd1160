"""Code generation targets other than the default numpy module, one package each."""
