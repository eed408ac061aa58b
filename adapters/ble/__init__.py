"""Bluetooth LE sensors through BlueZ: advert decoding, GATT devices, a self-healing scanner.

Importing this package imports nothing from bleak; ``config`` is safe without Bluetooth
libraries, ``adapter`` pulls them in only when a BLE device is configured.
"""
