print("loadtest: not yet")
