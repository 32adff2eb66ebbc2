"""One module per AI client: the rules that configure it to use LiteLLM."""
