"""The policy: the one decision per incident (auto, approval, escalate) and its guards."""
