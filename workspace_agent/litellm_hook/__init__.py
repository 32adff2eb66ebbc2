"""Server-side enforcement for a LiteLLM proxy: an optional part of this project.

The agent never imports this package. A LiteLLM proxy loads it through its config:

    litellm_settings:
      callbacks: ["workspace_agent.litellm_hook.enforcement.handler"]

`policy` is plain Python (which level, which prompt, how to prepend it, the response header);
`enforcement` is the thin `CustomLogger` that LiteLLM calls and the only module importing litellm.
See docs/litellm-hook.md.
"""
