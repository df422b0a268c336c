"""The `bootstorm` command: serve, get, check, convert; dnsmasq-style options."""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import signal
import sys

import msgspec

from bootstorm.config import TftpConfig
from bootstorm.errors import ConfigError, TftpError


def _host_port(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and not host.endswith(":"):
        return host.strip("[]"), int(port)
    return text.strip("[]"), default_port


def _raise_nofile() -> int:
    """Every transfer holds a socket: take the hard open-file limit where allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > 1 << 20:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def _config(args):
    """The Config to run: a TOML file, or the command-line options alone."""
    from bootstorm.config import Config, load

    if args.config:
        config = load(args.config)
    elif args.tftp_root:
        config = Config(tftp=TftpConfig(
            root=args.tftp_root, listen=args.listen, port=args.tftp_port,
            blksize_max=args.blksize_max, window_bytes_max=args.window_bytes_max,
            max_transfers=args.max_transfers, retransmit_timeout=args.retransmit_timeout,
            give_up_timeout=args.give_up_timeout, no_blocksize=args.no_blocksize,
            lowercase=args.lowercase, memory_file_max=args.memory_file_max,
            single_port=args.single_port, busy_poll_us=args.busy_poll_us))
    else:
        raise ConfigError("nothing to serve: give --tftp-root DIR or --config FILE")
    if args.no_tftp:
        config = msgspec.structs.replace(config, tftp=None)
    if args.no_dhcp:
        config = msgspec.structs.replace(config, dhcp=None)
    if config.tftp is None and config.dhcp is None:
        raise ConfigError("nothing to serve: both TFTP and ProxyDHCP are off")
    if config.tftp is not None:
        root = os.path.abspath(config.tftp.root)
        if not os.path.isdir(root):
            raise ConfigError(f"TFTP root {root}: not a directory")
        config = msgspec.structs.replace(config, tftp=msgspec.structs.replace(config.tftp, root=root))
    return config


async def _await_workers(fd: int, count: int, stop: asyncio.Event, timeout: float = 10.0) -> bool:
    """Wait until `count` workers said they serve (a byte each on the pipe fd), so that the
    "listening" line means every worker listens; exit 1 if one does not in time. False if
    SIGINT/SIGTERM came first: a stop is not held up by a worker that is slow to start."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    got = 0

    def on_readable() -> None:
        nonlocal got
        data = os.read(fd, count)
        got += len(data)
        if (not data or got >= count) and not done.done():  # no data: every worker closed its end
            done.set_result(None)

    loop.add_reader(fd, on_readable)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([done, stopping], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        loop.remove_reader(fd)
        os.close(fd)
    if stop.is_set():
        return False
    if got < count:
        print(f"bootstorm: {count - got} of {count + 1} worker processes did not start",
              file=sys.stderr, flush=True)
        raise SystemExit(1)
    return True


def log_to(path: str, owner: int | None = None) -> None:
    """stderr, where every line goes, appends to the file at path from now on (dnsmasq's
    log-facility=/path): opened as dnsmasq opens it, and given to `owner` when root is to be
    given up to that uid, so that the file and its rotated successors stay writable."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        if owner:
            try:
                os.fchown(fd, owner, -1)
            except OSError:
                pass  # as dnsmasq: a file system that refuses it is no reason to stop
        sys.stderr.flush()
        os.dup2(fd, 2)
    finally:
        os.close(fd)


def run_services(config, log_format: str = "text", workers: int = 1, become=None,
                 log_file: str | None = None, reload=None, serving=None) -> int:
    """Run TFTP and ProxyDHCP as configured until SIGINT/SIGTERM; with `become` (a
    privileges.Identity), as that user once the ports are bound and the roots open. With
    `log_file` (stderr goes there), SIGUSR2 reopens it, as dnsmasq's does for log rotation.
    With `reload` (dnsmasq's command line), SIGHUP calls it for the ProxyDHCP configuration
    and the files it read again, and answers with them from then on. `serving` is called
    once everything listens (a daemon's parent exits then)."""
    import uvloop

    from bootstorm._native import tftp as native
    from bootstorm.log import Log
    from bootstorm.proxydhcp import ProxyDhcpServer
    from bootstorm.tftp import TftpServer

    log = Log(log_format)
    nofile = _raise_nofile()
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # until the loop handles them: never fatal
    workers = max(1, workers)
    children = []
    ready_r, ready_w = os.pipe() if workers > 1 else (-1, -1)  # workers tell the lead they serve
    for _ in range(workers - 1):  # SO_REUSEPORT: the kernel spreads requests over workers
        pid = os.fork()
        if pid == 0:
            children = None
            os.close(ready_r)
            break
        children.append(pid)
    lead = children is not None
    if lead and workers > 1:
        os.close(ready_w)

    def announce(event: str, message: str) -> None:
        """What is served and where: a plain line, or a JSON event with --log-format json."""
        if log.json:
            log.event(event, message)
        else:
            print(f"bootstorm: {message}", file=sys.stderr, flush=True)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        services = []

        def give_up(message: str) -> None:
            print(f"bootstorm: {message}", file=sys.stderr)
            for s in services:
                s.close()
            raise SystemExit(1)

        try:
            if config.tftp is not None:
                tftp = TftpServer(config.tftp, log, reuse_port=workers > 1)
                services.append(tftp)
            if config.dhcp is not None and lead:  # a few packets per client: one process
                services.append(ProxyDhcpServer(config.dhcp, log))
        except OSError as exc:
            give_up(f"cannot listen: {exc.strerror}"
                    f"{' (ports below 1024 need root)' if exc.errno == 13 else ''}")
        if become is not None:
            from bootstorm import privileges

            try:
                privileges.drop(become)
            except OSError as exc:
                give_up(f"cannot change to user {become.user}, group {become.group}: {exc.strerror or exc}")
            if lead:
                announce("privileges", f"running as user {become.user}, group {become.group}"
                         + (", keeping CAP_NET_ADMIN only" if become.uid else ""))
        for s in services:
            s.start(loop)
            if isinstance(s, ProxyDhcpServer) and config.tftp is not None:
                for sock in s.sockets:  # the TFTP engine's busy-polling gives way to them
                    tftp.watch(sock.fileno())

        def log_stats() -> None:
            for s in services:
                if isinstance(s, TftpServer):
                    log.event("tftp-stats", **s.stats())
                else:
                    log.event("dhcp-stats", **s.counters)

        def pass_on(sig: int) -> None:
            """The lead passes a signal on to the workers, so that each acts on it too."""
            for pid in children or ():
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass

        def on_usr1() -> None:
            """The counters so far, while serving on (dnsmasq's SIGUSR1 habit)."""
            pass_on(signal.SIGUSR1)
            log_stats()

        def on_usr2() -> None:
            """dnsmasq's log rotation: the log file is closed and opened again by path."""
            pass_on(signal.SIGUSR2)
            if log_file:
                try:
                    log_to(log_file)
                except OSError as exc:
                    log.event("log-reopen-failed", f"{log_file}: {exc.strerror}; still writing to the old file")

        def on_hup() -> None:
            """dnsmasq re-reads its hosts and options files on SIGHUP: so does bootstorm with
            dnsmasq's command line (ProxyDHCP runs in the lead only); its own configuration
            is read once, at start."""
            if not lead:
                return
            if reload is None:
                log.event("sighup", "nothing is re-read: the configuration is read once, at start; "
                          "restart bootstorm to apply changes")
                return
            try:
                dhcp, files = reload()
                for s in services:
                    if isinstance(s, ProxyDhcpServer) and dhcp is not None:
                        s.reconfigure(dhcp)
            except ConfigError as exc:
                log.event("sighup-failed", f"{exc}; answering as before")
                return
            log.event("sighup", f"re-read {', '.join(files)}" if files else
                      "nothing to re-read (no dhcp-hostsfile or dhcp-optsfile)")

        # what start-up made lives as long as the process: the collector need not walk it
        gc.freeze()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, on_usr1)
        loop.add_signal_handler(signal.SIGUSR2, on_usr2)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        if not lead:
            try:
                os.write(ready_w, b".")  # serving, and the signals are handled
            except BrokenPipeError:
                pass  # the lead stopped while waiting: its SIGTERM is on the way
            os.close(ready_w)
        elif workers == 1 or await _await_workers(ready_r, workers - 1, stop):
            for s in services:
                if isinstance(s, TftpServer):
                    host, port = s.address
                    announce("tftp-listening", f"TFTP listening on {host}:{port}, serving {config.tftp.root} "
                             f"(workers {workers}, max transfers {config.tftp.max_transfers} each, "
                             f"open files {nofile}, UDP GSO {'on' if s.engine.uses_gso else 'off'}, "
                             f"openat2 {'yes' if native.have_openat2() else 'no, component walk'})")
                else:
                    ports = ", ".join(f"{h}:{p}" for h, p in s.addresses)
                    state = "answering" if s.policy.enabled else "silent (no PXE service or prompt configured)"
                    announce("dhcp-listening", f"ProxyDHCP listening on {ports}, {state}, "
                             f"{len(s.policy.services)} PXE services, {len(config.dhcp.boot)} boot files")
            if serving is not None:
                serving()
        await stop.wait()
        for s in services:
            s.close()
        log_stats()

    try:
        uvloop.run(run())
    finally:
        for pid in children or ():
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except OSError:
                pass
    return 0


def cmd_serve(args) -> int:
    from bootstorm import privileges

    become = None
    try:
        config = _config(args)
        if args.workers > 1 and config.tftp is not None and config.tftp.port == 0:
            raise ConfigError("--workers shares one port between processes: give a fixed --tftp-port")
        if args.group and not args.user:
            raise ConfigError("--group goes with --user")
        if args.user and os.getuid() != 0:
            raise ConfigError("--user needs bootstorm started as root (to give root up)")
        if args.user:
            become = privileges.resolve(args.user, args.group)
    except (ConfigError, ValueError, msgspec.ValidationError) as exc:
        print(f"bootstorm: {exc}", file=sys.stderr)
        return 2
    return run_services(config, args.log_format, args.workers, become)


def cmd_get(args) -> int:
    from bootstorm.client import fetch

    host, port = _host_port(args.server, 69)
    target = args.output or os.path.basename(args.file.replace("\\", "/")) or "download"
    show = sys.stderr.isatty() and not args.quiet

    def progress(received, total):
        if total:
            sys.stderr.write(f"\r{args.file}: {received}/{total} bytes ({100 * received // max(total, 1)}%)")
        else:
            sys.stderr.write(f"\r{args.file}: {received} bytes")

    kw = dict(blksize=args.blksize, windowsize=args.windowsize, tsize=args.tsize,
              mode="netascii" if args.netascii else "octet", timeout=args.timeout,
              progress=progress if show else None)
    try:
        if target == "-":
            result = fetch(host, port, args.file, sys.stdout.buffer, **kw)
        else:
            from bootstorm.client import fetch_to_path
            result = fetch_to_path(host, port, args.file, target, **kw)
    except TftpError as exc:
        print(f"{chr(10) if show else ''}bootstorm get: server error {exc.code}: {exc.message}",
              file=sys.stderr)
        return 1
    except (TimeoutError, OSError) as exc:
        print(f"{chr(10) if show else ''}bootstorm get: {exc}", file=sys.stderr)
        return 1
    if show:
        sys.stderr.write("\n")
    if not args.quiet:
        rate = result.size / result.seconds / 1e6 if result.seconds else 0.0
        print(f"bootstorm get: {args.file}: {result.size} bytes in {result.seconds:.3f} s "
              f"({rate:.1f} MB/s, blksize {result.blksize}, windowsize {result.windowsize})",
              file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bootstorm", description="Network-boot server for bare-metal fleets: TFTP and ProxyDHCP (PXE). "
                                "dnsmasq's options work too: bootstorm --conf-file=F --keep-in-foreground")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="serve TFTP and ProxyDHCP (--config), or a directory over TFTP")
    d = TftpConfig.__struct_defaults__
    f = dict(zip(TftpConfig.__struct_fields__[-len(d):], d))
    s.add_argument("--config", metavar="FILE", help="TOML configuration (TFTP and ProxyDHCP)")
    s.add_argument("--tftp-root", metavar="DIR", help="directory to serve over TFTP (read-only)")
    s.add_argument("--no-tftp", action="store_true", help="switch the TFTP service off")
    s.add_argument("--no-dhcp", action="store_true", help="switch the ProxyDHCP service off")
    s.add_argument("--listen", default=f["listen"], metavar="ADDR", help="IPv4 address to listen on (default all)")
    s.add_argument("--tftp-port", type=int, default=f["port"], metavar="PORT", help="UDP port (default 69; 0 picks a free one)")
    s.add_argument("--blksize-max", type=int, default=f["blksize_max"], metavar="N",
                   help="largest blksize granted (default: interface MTU - 32)")
    s.add_argument("--window-bytes-max", type=int, default=f["window_bytes_max"], metavar="N",
                   help="largest windowsize * blksize granted (default %(default)s)")
    s.add_argument("--max-transfers", type=int, default=f["max_transfers"], metavar="N",
                   help="concurrent transfers per worker (default %(default)s)")
    s.add_argument("--retransmit-timeout", type=float, default=f["retransmit_timeout"], metavar="S",
                   help="first retransmission timeout, doubled per retry (default %(default)s s)")
    s.add_argument("--give-up-timeout", type=float, default=f["give_up_timeout"], metavar="S",
                   help="abandon a transfer without progress for this long (default %(default)s s)")
    s.add_argument("--memory-file-max", type=int, default=f["memory_file_max"], metavar="N",
                   help="serve files up to N bytes from a snapshot in memory (default %(default)s)")
    s.add_argument("--no-blocksize", action="store_true", help="ignore the blksize option (dnsmasq tftp-no-blocksize)")
    s.add_argument("--lowercase", action="store_true", help="map file names to lower case (dnsmasq tftp-lowercase)")
    s.add_argument("--single-port", action="store_true",
                   help="send every transfer from the listening port, for NAT (dnsmasq tftp-single-port)")
    s.add_argument("--busy-poll-us", type=int, default=f["busy_poll_us"], metavar="US",
                   help="while transfers run, look for the next datagram this long before "
                        "sleeping (default %(default)s; 0 = off)")
    s.add_argument("--workers", type=int, default=1, metavar="N", help="processes sharing the port (SO_REUSEPORT)")
    s.add_argument("--user", metavar="USER", help="started as root, become USER once the ports are bound "
                                                   "(keeping CAP_NET_ADMIN only), as dnsmasq's user=")
    s.add_argument("--group", metavar="GROUP", help="with --user: the group (default dip where it exists, "
                                                     "else USER's own), as dnsmasq's group=")
    s.add_argument("--log-format", choices=("text", "json"), default="text", help="log lines on stderr")
    s.set_defaults(func=cmd_serve)

    g = sub.add_parser("get", help="download a file over TFTP")
    g.add_argument("server", metavar="HOST[:PORT]")
    g.add_argument("file")
    g.add_argument("-o", "--output", metavar="OUT", help="where to write (default: the file's base name; - for stdout)")
    g.add_argument("--blksize", type=int, metavar="N")
    g.add_argument("--windowsize", type=int, metavar="N")
    g.add_argument("--tsize", action="store_true", help="ask for the size (shows a percentage)")
    g.add_argument("--netascii", action="store_true", help="netascii mode instead of octet")
    g.add_argument("--timeout", type=float, default=1.0, metavar="S", help="retransmission timeout")
    g.add_argument("-q", "--quiet", action="store_true")
    g.set_defaults(func=cmd_get)

    from bootstorm import dnsmasq  # dnsmasq conf files: check and convert

    c = sub.add_parser("check", help="validate a config; show what each kind of client receives")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--conf-file", "-C", metavar="FILE", help="a dnsmasq conf file")
    src.add_argument("--config", metavar="FILE", help="a native TOML config")
    c.set_defaults(func=dnsmasq.cmd_check)

    v = sub.add_parser("convert", help="write a dnsmasq conf file as native TOML")
    v.add_argument("--conf-file", "-C", metavar="FILE", required=True, help="the dnsmasq conf file")
    v.add_argument("-o", "--output", metavar="OUT", help="where to write (default stdout)")
    v.set_defaults(func=dnsmasq.cmd_convert)
    return p


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    # dnsmasq-style invocation: `bootstorm --conf-file=F -k`, or the program linked as `dnsmasq`
    if os.path.basename(sys.argv[0]) == "dnsmasq" or (argv and argv[0].startswith("-")
                                                       and argv[0] not in ("-h", "--help")):
        from bootstorm import dnsmasq

        return dnsmasq.run(argv)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
