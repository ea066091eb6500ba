"""One line to send a Python client through a local syncoord daemon.

    import ccxt, syncoord
    exchange = syncoord.ccxt(ccxt.coinbase({...}))   # or ccxt.async_support
    session = syncoord.session()                     # a requests.Session

Each helper sets the proxy (``HTTPS_PROXY`` interception: the client keeps
its real URLs and signatures) and the trust of syncoord's local CA, the
way that client family needs it: requests and sync ccxt verify with the
CA on the session's HTTPS adapter; async ccxt (aiohttp) ignores
``REQUESTS_CA_BUNDLE`` and ``SSL_CERT_FILE`` and needs its ``cafile``.

Where the daemon is, first found wins:
  proxy:  ``SYNCOORD_PROXY``; ``[server] listen`` of the file named by
          ``SYNCOORD_CONFIG``; ``http://127.0.0.1:8787``.
  CA:     ``SYNCOORD_CA_FILE``; ``SYNCOORD_CA_DIR``/ca.pem;
          ``[server] ca_dir`` of ``SYNCOORD_CONFIG``/ca.pem;
          ``$XDG_DATA_HOME/syncoord/ca/ca.pem``; ``~/.local/share/syncoord/ca/ca.pem``.
The daemon creates its CA at start and ``syncoord ca`` prints its path.
"""

import os

__all__ = ["proxy_url", "ca_file", "session", "ccxt"]

DEFAULT_LISTEN = "127.0.0.1:8787"


def _server_config():
    """``[server]`` of ``$SYNCOORD_CONFIG``, or ``{}``."""
    path = os.environ.get("SYNCOORD_CONFIG")
    if not path:
        return {}
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - older Pythons
        return {}
    with open(path, "rb") as f:
        return tomllib.load(f).get("server", {})


def proxy_url():
    """The daemon's address as a proxy URL, e.g. ``http://127.0.0.1:8787``."""
    url = os.environ.get("SYNCOORD_PROXY")
    if not url:
        url = _server_config().get("listen", DEFAULT_LISTEN)
    return url if "://" in url else "http://" + url


def ca_file():
    """The path of the CA certificate clients must trust."""
    path = os.environ.get("SYNCOORD_CA_FILE")
    if path:
        return path
    folder = os.environ.get("SYNCOORD_CA_DIR") or _server_config().get("ca_dir")
    if not folder:
        data = os.environ.get("XDG_DATA_HOME") or os.path.join(
            os.path.expanduser("~"), ".local", "share"
        )
        folder = os.path.join(data, "syncoord", "ca")
    return os.path.join(folder, "ca.pem")


def _trusting_adapter(ca):
    import requests.adapters

    class TrustSyncoordCa(requests.adapters.HTTPAdapter):
        """Verifies with syncoord's CA unless verification is off: every
        https request of this session goes through syncoord's interception,
        whose certificates only that CA signs. ``Session.verify`` is not
        enough: sync ccxt passes ``verify=True`` on every call, and
        requests replaces ``True`` with ``REQUESTS_CA_BUNDLE`` or
        ``CURL_CA_BUNDLE`` when either is set (often the system roots)."""

        def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
            if verify is not False:
                verify = ca
            return super().send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )

    return TrustSyncoordCa()


def session(s=None):
    """A ``requests.Session`` (``s``, or a new one) sending through syncoord.

    For coinbase-advanced-py: ``syncoord.session(client.session)``."""
    if s is None:
        import requests

        s = requests.Session()
    url = proxy_url()
    s.proxies.update({"https": url})
    s.mount("https://", _trusting_adapter(ca_file()))
    return s


def ccxt(exchange):
    """Configures a ccxt exchange (sync or ``ccxt.async_support``) to send
    through syncoord; returns it. Call before the first request."""
    url = proxy_url()
    ca = ca_file()
    exchange.httpsProxy = url
    if type(exchange).__module__.startswith("ccxt.async_support"):
        # aiohttp builds its SSL context from `cafile` when its session
        # opens; one already open keeps the context it has.
        exchange.cafile = ca
        exchange.ssl_context = None
    else:
        session(exchange.session)
    return exchange
