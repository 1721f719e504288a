"""
A node of a cluster: several servers acting as one, sharing a directory of
sessions through Redis, so that clients connected to different nodes relay
values to each other as if they shared one server.

Every node reads the same two key files: the clients' named keys (as
``chat_server.py`` does) and the cluster key, which seals every message
between nodes so that Redis never sees a value (``netstructer keygen -o
cluster.key``; it stays on the servers).  Start Redis, then each node with
a name of its own (``pip install 'netstructer[cluster]'``)::

    redis-server --port 6379 --save '' &
    python examples/cluster_node.py --port 5001 --node-name n1 --key-file chat-server.key &
    python examples/cluster_node.py --port 5002 --node-name n2 --key-file chat-server.key &

The clients are unchanged: run ``chat_client.py`` as alice against one node
and as bob against the other.  A node logs to standard output; Ctrl-C or
SIGTERM stops it, and it leaves the cluster at once.
"""

from __future__ import annotations

import argparse
import sys

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorCore
from twisted.logger import globalLogBeginner, textFileLogObserver

from netstructer.server import Server


async def serve(reactor: IReactorCore, args: argparse.Namespace) -> None:
    server = Server(
        f"tcp:{args.port}:interface=127.0.0.1",
        None,  # no key given: read the clients' named keys from the key file
        keyFile=args.key_file,
        relay=True,  # sendTo and publish, now across every node
        cluster=args.cluster,  # the Redis all the nodes share
        clusterKey=args.cluster_key,
        nodeName=args.node_name,  # unique in the cluster
        reactor=reactor,
    )
    await server.listen()  # and join: "Node n1 joined the cluster at ..."
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    await defer.Deferred()  # relay until Ctrl-C or SIGTERM stops the reactor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5000, help="0 picks a free port")
    parser.add_argument("--key-file", required=True, help="the named keys of the clients")
    parser.add_argument("--cluster", default="redis://127.0.0.1:6379/0", help="Redis's URL")
    parser.add_argument("--cluster-key", default="cluster.key", help="the cluster's key file")
    parser.add_argument("--node-name", required=True, help="this node's name")
    args = parser.parse_args()
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    task.react(lambda reactor: defer.ensureDeferred(serve(reactor, args)))


if __name__ == "__main__":
    main()
