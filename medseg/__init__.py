"""medseg: chest X-ray and CT lung segmentation with ImageNet-pretrained U-Nets."""
__version__ = "0.1.0"
