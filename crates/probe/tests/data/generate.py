#!/usr/bin/env python3
"""Regenerate the fixture sysfs trees in this directory.

The trees are committed (symlinks included); this script only documents how they
were made and lets a reviewer rebuild them: `python3 generate.py` from this
directory. Layout follows the kernel: class/drm/cardN are relative symlinks into
devices/pci..., each card's `device` link points at its PCI function, each PCI
function's `driver` link points into bus/pci/drivers. Values are realistic
readings (units as the kernel prints them: bytes, millidegrees C, microwatts).
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = [
    "amd-discrete", "amd-apu", "amd-two-cards", "intel-xe", "intel-i915",
    "empty", "corrupt", "cgroup-v2", "cgroup-v1", "cgroup-unlimited",
]


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def raw_link(path, target):
    """Symlink at `path` with exactly the kernel's relative `target` text."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)


def link(path, target_abs):
    """Relative symlink at `path` pointing at `target_abs`."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rel = os.path.relpath(target_abs, os.path.dirname(path))
    os.symlink(rel, path)


def drm_version(root):
    write(f"{root}/class/drm/version", "drm 1.1.0 20060810\n")


def pci_function(root, path, vendor, device, revision, driver, files=None,
                 hwmon=None, klass="0x030000"):
    """A PCI function at devices/<path>; returns its absolute directory."""
    dev = f"{root}/devices/{path}"
    bus_id = os.path.basename(path)
    if vendor is not None:
        write(f"{dev}/vendor", vendor + "\n")
    if device is not None:
        write(f"{dev}/device", device + "\n")
    if revision is not None:
        write(f"{dev}/revision", revision + "\n")
    write(f"{dev}/class", klass + "\n")
    pci_id = f"{(vendor or '0x0000')[2:].upper()}:{(device or '0x0000')[2:].upper()}"
    write(f"{dev}/uevent",
          (f"DRIVER={driver}\n" if driver else "")
          + f"PCI_CLASS={klass[2:].lstrip('0')}\nPCI_ID={pci_id}\n"
          + f"PCI_SLOT_NAME={bus_id}\n")
    if driver:
        drv = f"{root}/bus/pci/drivers/{driver}"
        write(f"{drv}/bind", "")
        link(f"{dev}/driver", drv)
    for name, value in (files or {}).items():
        write(f"{dev}/{name}", value)
    for hw, entries in (hwmon or {}).items():
        for name, value in entries.items():
            write(f"{dev}/hwmon/{hw}/{name}", value)
    return dev


def card(root, n, dev, connectors=(), card_files=None):
    """class/drm/cardN -> <dev>/drm/cardN, with its connectors."""
    cdir = f"{dev}/drm/card{n}"
    write(f"{cdir}/dev", f"226:{n}\n")
    write(f"{cdir}/uevent", f"MAJOR=226\nMINOR={n}\nDEVNAME=dri/card{n}\nDEVTYPE=drm_minor\n")
    raw_link(f"{cdir}/device", f"../../../{os.path.basename(dev)}")
    for name, value in (card_files or {}).items():
        write(f"{cdir}/{name}", value)
    link(f"{root}/class/drm/card{n}", cdir)
    for conn in connectors:
        c = f"{cdir}/card{n}-{conn}"
        write(f"{c}/status", "connected\n" if conn.startswith(("DP-1", "eDP")) else "disconnected\n")
        write(f"{c}/enabled", "enabled\n")
        raw_link(f"{c}/device", f"../../card{n}")
        link(f"{root}/class/drm/card{n}-{conn}", c)


def render(root, minor, dev):
    r = f"{dev}/drm/renderD{minor}"
    write(f"{r}/dev", f"226:{minor}\n")
    raw_link(f"{r}/device", f"../../../{os.path.basename(dev)}")
    link(f"{root}/class/drm/renderD{minor}", r)


def xtx(root, path, with_unique_id=True):
    files = {
        "mem_info_vram_total": "25753026560\n",
        "mem_info_vram_used": "1234829312\n",
        "mem_info_vis_vram_total": "25753026560\n",
        "mem_info_vis_vram_used": "1234829312\n",
        "mem_info_gtt_total": "33525448704\n",
        "mem_info_gtt_used": "17563648\n",
        "gpu_busy_percent": "4\n",
        "product_name": "",
    }
    if with_unique_id:
        files["unique_id"] = "6a1c2f3e8b9d0a47\n"
    return pci_function(
        root, path, "0x1002", "0x744c", "0xc8", "amdgpu", files,
        hwmon={"hwmon2": {"name": "amdgpu\n", "temp1_input": "41000\n",
                          "temp2_input": "48000\n", "temp3_input": "52000\n",
                          "power1_input": "28000000\n", "power1_cap": "303000000\n"}})


def amd_discrete(root):
    drm_version(root)
    dev = xtx(root, "pci0000:00/0000:00:01.1/0000:01:00.0/0000:02:00.0/0000:03:00.0")
    card(root, 0, dev, ["DP-1", "DP-2", "HDMI-A-1"])
    render(root, 128, dev)


def amd_apu(root):
    drm_version(root)
    # simpledrm's framebuffer card: a platform device with no PCI vendor file.
    fb = f"{root}/devices/platform/simple-framebuffer.0"
    write(f"{fb}/uevent", "DRIVER=simple-framebuffer\n")
    card(root, 0, fb, ["Unknown-1"])
    dev = pci_function(
        root, "pci0000:00/0000:00:08.1/0000:c4:00.0", "0x1002", "0x15bf", "0xc2",
        "amdgpu",
        {"mem_info_vram_total": "536870912\n", "mem_info_vram_used": "151916544\n",
         "mem_info_gtt_total": "16483926016\n", "mem_info_gtt_used": "55508992\n",
         "gpu_busy_percent": "0\n"},
        hwmon={"hwmon5": {"name": "amdgpu\n", "temp1_input": "39000\n",
                          "power1_average": "7000000\n"}})
    card(root, 1, dev, ["eDP-1", "DP-1", "HDMI-A-1"])
    render(root, 128, dev)


def amd_two_cards(root):
    drm_version(root)
    # card0 is the later PCI slot: the index must follow PCI order, not card order.
    d6800 = pci_function(
        root, "pci0000:00/0000:00:03.1/0000:08:00.0/0000:09:00.0/0000:0a:00.0",
        "0x1002", "0x73bf", "0xc1", "amdgpu",
        {"mem_info_vram_total": "17163091968\n", "mem_info_vram_used": "532676608\n",
         "mem_info_gtt_total": "33525448704\n", "mem_info_gtt_used": "12582912\n",
         "gpu_busy_percent": "97\n", "product_name": "AMD Radeon RX 6800 XT\n"},
        hwmon={"hwmon3": {"name": "amdgpu\n", "temp1_input": "66000\n",
                          "power1_average": "255000000\n"}})
    card(root, 0, d6800, ["DP-1", "HDMI-A-1"])
    render(root, 128, d6800)
    dxtx = xtx(root, "pci0000:00/0000:00:01.1/0000:01:00.0/0000:02:00.0/0000:03:00.0",
               with_unique_id=False)
    card(root, 1, dxtx, ["DP-1"])
    render(root, 129, dxtx)


def intel_xe(root):
    drm_version(root)
    b580 = pci_function(
        root, "pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:01.0/0000:03:00.0",
        "0x8086", "0xe20b", "0x00", "xe",
        {"tile0/physical_vram_size_bytes": "12884901888\n",
         "tile0/gt0/freq0/cur_freq": "2850\n"},
        hwmon={"hwmon4": {"name": "xe\n", "temp2_input": "46000\n",
                          "temp3_input": "52000\n", "power1_max": "190000000\n",
                          "energy1_input": "873120394000\n"}})
    card(root, 0, b580, ["DP-1", "DP-2", "HDMI-A-1"])
    render(root, 128, b580)
    # Data Center GPU Max 1550: two tiles of 64 GiB each.
    pvc = pci_function(
        root, "pci0000:36/0000:36:01.0/0000:37:00.0/0000:38:01.0/0000:39:00.0/0000:3a:00.0",
        "0x8086", "0x0bd5", "0x2f", "xe",
        {"tile0/physical_vram_size_bytes": "68719476736\n",
         "tile1/physical_vram_size_bytes": "68719476736\n"},
        hwmon={"hwmon6": {"name": "xe\n", "temp2_input": "37000\n"}},
        klass="0x038000")
    card(root, 1, pvc)
    render(root, 129, pvc)


def intel_i915(root):
    drm_version(root)
    a770 = pci_function(
        root, "pci0000:00/0000:00:01.0/0000:01:00.0/0000:02:01.0/0000:03:00.0",
        "0x8086", "0x56a0", "0x08", "i915", {},
        hwmon={"hwmon3": {"name": "i915\n", "temp1_input": "45000\n",
                          "power1_max": "190000000\n", "energy1_input": "4123456789\n"}})
    card(root, 0, a770, ["DP-1", "DP-2", "HDMI-A-1"],
         card_files={"lmem_total_bytes": "17179869184\n"})
    render(root, 128, a770)
    igpu = pci_function(root, "pci0000:00/0000:00:02.0", "0x8086", "0xa780", "0x04", "i915")
    card(root, 1, igpu, ["HDMI-A-2", "DP-3"])
    render(root, 129, igpu)


def empty(root):
    drm_version(root)


def corrupt(root):
    drm_version(root)
    # card0: an RX 7900 XTX whose readings are garbage, negative, empty or too hot.
    d0 = pci_function(
        root, "pci0000:00/0000:00:01.1/0000:01:00.0/0000:02:00.0/0000:03:00.0",
        "0x1002", "0x744c", "0xc8", "amdgpu",
        {"mem_info_vram_total": "garbage\n", "mem_info_vram_used": "-1\n",
         "mem_info_gtt_total": "33525448704\n", "mem_info_gtt_used": "17563648\n",
         "gpu_busy_percent": "", "unique_id": "\n"},
        hwmon={"hwmon2": {"name": "amdgpu\n", "temp1_input": "999999999\n",
                          "power1_average": "-5\n"}})
    card(root, 0, d0, ["DP-1"])
    render(root, 128, d0)
    # card1: AMD with an unparsable device id, no driver link, absurd sizes, a
    # directory where a value should be, and a dangling hwmon link.
    d1 = pci_function(
        root, "pci0000:00/0000:00:03.1/0000:0b:00.0", "0x1002", "0xZZZZ", None, None,
        {"mem_info_vram_total": "99999999999999999999\n",
         "mem_info_vram_used": "1152921504606846976\n",
         "mem_info_gtt_total/.keep": "",
         "gpu_busy_percent": "250\n"})
    os.makedirs(f"{d1}/hwmon/hwmon7", exist_ok=True)
    os.symlink("../../no-such-sensor", f"{d1}/hwmon/hwmon7/temp1_input")
    write(f"{d1}/hwmon/hwmon7/name", "amdgpu\n")
    card(root, 1, d1)
    # card2: xe card with one good and one garbage tile, and a 0 °C reading.
    d2 = pci_function(
        root, "pci0000:00/0000:00:03.2/0000:0c:00.0", "0x8086", "0xe20b", "0x00", "xe",
        {"tile0/physical_vram_size_bytes": "12884901888\n",
         "tile1/physical_vram_size_bytes": "abc\n"},
        hwmon={"hwmon8": {"name": "xe\n", "temp2_input": "0\n"}})
    card(root, 2, d2)
    # card3: vendor file is not a PCI id: not attributable, skipped.
    d3 = pci_function(root, "pci0000:00/0000:00:03.3/0000:0d:00.0", "nvidia", "0x2684",
                      "0xa1", "nvidia")
    card(root, 3, d3)
    # A cgroup v2 memory.max that is not a number: no limit is applied.
    write(f"{root}/fs/cgroup/memory.max", "-1\n")
    write(f"{root}/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n")


def cgroup_v2(root):
    sys = f"{root}/sys"
    drm_version(sys)
    write(f"{root}/proc/self/cgroup", "0::/system.slice/vramroute-reporter.service\n")
    cg = f"{sys}/fs/cgroup"
    write(f"{cg}/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n")
    write(f"{cg}/system.slice/memory.max", "17179869184\n")
    write(f"{cg}/system.slice/memory.current", "6442450944\n")
    svc = f"{cg}/system.slice/vramroute-reporter.service"
    write(f"{svc}/memory.max", "4294967296\n")
    write(f"{svc}/memory.current", "1073741824\n")
    # A sibling with a smaller limit must not apply to us.
    write(f"{cg}/system.slice/other.service/memory.max", "1048576\n")


def cgroup_v1(root):
    sys = f"{root}/sys"
    drm_version(sys)
    write(f"{root}/proc/self/cgroup",
          "12:memory:/docker/3f9a1c\n11:cpu,cpuacct:/docker/3f9a1c\n0::/docker/3f9a1c\n")
    mem = f"{sys}/fs/cgroup/memory"
    write(f"{mem}/memory.limit_in_bytes", "9223372036854771712\n")
    write(f"{mem}/docker/3f9a1c/memory.limit_in_bytes", "2147483648\n")
    write(f"{mem}/docker/3f9a1c/memory.usage_in_bytes", "536870912\n")


def cgroup_unlimited(root):
    # A container with its own cgroup namespace and no memory limit.
    drm_version(root)
    write(f"{root}/fs/cgroup/cgroup.controllers", "cpu io memory pids\n")
    write(f"{root}/fs/cgroup/memory.max", "max\n")
    write(f"{root}/fs/cgroup/memory.current", "73400320\n")


def main():
    for name in FIXTURES:
        root = os.path.join(HERE, name)
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        globals()[name.replace("-", "_")](root)


if __name__ == "__main__":
    main()
