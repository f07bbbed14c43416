"""edgectl device drivers: Modbus TCP/RTU links, register maps as data, SunSpec, device natures.

Modules (each with its own ``__all__``):

* :mod:`drivers.natures`   typed readings and commands (the contract with daemon and simulator)
* :mod:`drivers.fleet`     ``Fleet.from_site(site)``: poll, write with read-back, heartbeat
* :mod:`drivers.maps`      register map files (``drivers/maps/*.toml``), validated on load
* :mod:`drivers.codec`     register words <-> engineering values with quality
* :mod:`drivers.planner`   block reads (<= 125 registers), holes learnt from exception 2
* :mod:`drivers.links`     one asyncio worker per TCP endpoint or serial port, retries, back-off
* :mod:`drivers.device`    a unit read and written through a register map
* :mod:`drivers.sunspec`   SunSpec model definitions as data, chain layout and decoding
* :mod:`drivers.sunspec_client`  SunSpec discovery and model I/O over a link
* :mod:`drivers.image`     server side of a map (used by the simulator and the tests)
* :mod:`drivers.probe`     ``edgectl probe``, the commissioning tool
* :mod:`drivers.errors`    the drivers' error hierarchy
"""
