"""Wire protocols: Hydra (OpenAI-Realtime-shaped) and Twilio Media Streams."""

from hydralab.protocol import hydra, twilio
from hydralab.protocol.hydra import HydraEvent, ProtocolError, UnknownEvent, parse_event
from hydralab.protocol.twilio import TwilioEvent, TwilioFrameError, parse_twilio

__all__ = [
    "HydraEvent",
    "ProtocolError",
    "TwilioEvent",
    "TwilioFrameError",
    "UnknownEvent",
    "hydra",
    "parse_event",
    "parse_twilio",
    "twilio",
]
