"""The Modbus adapter: TCP, RTU and RTU-over-TCP devices polled as fast as the wire allows.

Layers, each in its own module:

* :mod:`.url`, :mod:`.codec`, :mod:`.planner`: pure code (bus URLs, register decoding, read
  planning), no I/O;
* :mod:`.config`: the pydantic models and cross-device checks (imports no pymodbus);
* :mod:`.compat`: the only module that knows pymodbus versions apart;
* :mod:`.link`: one physical line (connect, one transaction at a time, timeouts, frame gaps);
* :mod:`.device` and :mod:`.scheduler`: per-device poll state and the bus owner that interleaves
  devices, quarantines the dead ones and serves writes;
* :mod:`.adapter` and :mod:`.cli`: the plugin entry points.
"""
