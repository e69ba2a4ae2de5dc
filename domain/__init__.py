"""The example domain: the seed's event-sourced Order and the fact-event Book."""
