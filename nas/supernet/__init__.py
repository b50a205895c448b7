"""The elastic OFA-MobileNetV3 supernet, its static subnets, and OFA checkpoint loading."""

from nas.supernet.checkpoint import read_state_dict
from nas.supernet.ofa_mbv3 import OFAMobileNetV3, build_supernet
from nas.supernet.static import MobileNetV3, build_subnet

__all__ = ["MobileNetV3", "OFAMobileNetV3", "build_subnet", "build_supernet", "read_state_dict"]
