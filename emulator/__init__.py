"""A local emulator of the Azure control plane parts the mover calls (ARM, Microsoft Graph, Event Grid)."""
