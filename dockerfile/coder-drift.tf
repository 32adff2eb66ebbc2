# Drift reporting: the Coder template pieces (see dockerfile/README.md).
#
# Add this file next to the workspace template's main.tf. It assumes the template's agent is
# `coder_agent.main` and that workspace-agent is installed in the image (on PATH).
#
# Two things go INSIDE `resource "coder_agent" "main"` (Terraform cannot add blocks to a
# resource from another file):
#
#   env = merge(<the template's env map>, local.drift_env)
#
#   metadata {
#     display_name = "AI setup"
#     key          = "0_ai_setup"
#     script       = "workspace-agent status --short"   # reads two small files, no network
#     interval     = 10
#     timeout      = 5
#   }
#
# and the startup script reports its first run:  workspace-agent bootstrap --report

variable "drift_server_url" {
  type        = string
  default     = ""
  description = "Base URL of the drift server (e.g. https://drift.internal:8300). Empty: no reports are sent."

  validation {
    condition     = var.drift_server_url == "" || can(regex("^https?://", var.drift_server_url))
    error_message = "drift_server_url must start with http:// or https://."
  }
}

variable "drift_enrollment_secret" {
  type        = string
  default     = ""
  sensitive   = true
  description = "Shared enrollment secret of the drift server; each workspace trades it once for its own token."
}

locals {
  # Merge into coder_agent.main.env. The workspace id must be passed explicitly: reports and
  # enrollment are keyed on it.
  drift_env = {
    DRIFT_SERVER_URL        = var.drift_server_url
    DRIFT_ENROLLMENT_SECRET = var.drift_enrollment_secret
    CODER_WORKSPACE_ID      = data.coder_workspace.me.id
    CODER_WORKSPACE_NAME    = data.coder_workspace.me.name
    CODER_WORKSPACE_OWNER   = data.coder_workspace_owner.me.name
  }
}

# Scheduled read-only check every 5 minutes. It sends a report only when something changed or
# the server's heartbeat interval (with jitter) has passed; reports that cannot be sent wait in a
# bounded queue in the home volume. The random pause spreads a fleet's checks over a minute.
resource "coder_script" "drift_check" {
  count        = var.drift_server_url == "" ? 0 : 1
  agent_id     = coder_agent.main.id
  display_name = "AI setup drift check"
  icon         = "/icon/shield.svg"
  cron         = "0 */5 * * * *" # 6 fields: seconds first
  timeout      = 240
  script       = <<-EOT
    #!/bin/bash
    sleep $((RANDOM % 60))
    workspace-agent check --report -q
    code=$?
    # 0 compliant, 2 drift found (reported), 4/6 some rules could not be checked (reported);
    # only 1 means the check could not run at all.
    if [ "$code" -eq 1 ]; then exit 1; fi
    exit 0
  EOT
}
