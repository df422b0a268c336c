"""ProxyDHCP test harness: network namespaces, a PXE client simulator, servers, diffs.

Needs root and ``ip netns`` (skipped without them, failed when ``CI`` is set).

Modules
-------
netns.py        ``Lan({"srv": ["10.213.0.1/24"], "cli": []})`` / ``pxe_lan(with_dhcp=False)``:
                namespaces ``bs-<role>-<pid>-<n>`` joined by a veth pair (2 hosts) or a
                bridge in its own namespace (3+ hosts); every host's link is ``eth0``;
                removed on exit, stale ones of dead runs removed on the next.
simulator.py    packet builders (``discover``, ``request``, ``ClientProfile``), the
                independent decoder (``decode_frame``/``decode_bootp`` -> normalized dict),
                and ``Client(ns, mac=...)``: ``discover(arch, relay=, ipxe=, ...)``,
                ``request_4011(arch, sport=4011|68, item=)``,
                ``boot_server_request((type, layer), broadcast=)``, ``select(offer, xid=)``,
                ``tftp(server, file)``, ``batch()`` (many exchanges in one process).
                Each returns an ``Exchange`` (``.sent``, ``.replies``, ``.reply``).
servers.py      ``start(cmd, host, ready_line=, ports=)``, ``start_dnsmasq(host, body, ...)``,
                ``start_bootstorm(host, body=|conf_file=|toml=, ...)``; ``dnsmasq_conf``
                writes the conf both read (adds interface=eth0, bind-interfaces, no-resolv,
                no-hosts, dhcp-leasefile=<tmp>, log-dhcp).
differential.py ``compare(a, b, allow=[...])``, ``compare_runs``, ``Probe``,
                ``standard_probes()``, ``run_probes(client, probes)``, ``Scenario``.
conftest.py     fixtures ``lan``, ``lan_module``, ``lan_with_dhcp``, ``client``,
                ``client_module``, ``tftp_root``, ``servers`` / ``servers_module``.

Adding a scenario
-----------------
Write the config once in dnsmasq syntax, run the probes against each server in turn on
the same segment (same addresses and MACs, fixed xids), and diff::

    scen = Scenario("uefi-only", "dhcp-range=10.213.0.0,proxy\\n"
                    "pxe-service=x86-64_EFI,\\"UEFI\\",ipxe.efi\\n", probes=standard_probes())
    with servers.dnsmasq(lan["srv"], scen.conf_for(str(tftp_root))):
        ref = run_probes(client, scen.probes, salt=scen.name)
    with servers.bootstorm(lan["srv"], body=scen.conf_for(str(tftp_root))):
        got = run_probes(client, scen.probes, salt=scen.name)
    assert compare_runs(ref, got, allow=scen.allow, names=("dnsmasq", "bootstorm")) == []
"""
