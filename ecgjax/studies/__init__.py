"""Studies: experiments built from the layers below (the rhythm-context study, issue 7)."""
