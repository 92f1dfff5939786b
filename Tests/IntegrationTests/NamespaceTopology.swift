/// The shell steps the namespace labs (`DataPlaneLab`, `DaemonLab`, `ResendLab`) share; each lab runs them with its
/// own `sh` (and error type).
enum NamespaceTopology {
    /// A veth pair from `clientDevice` in `client` to `serverDevice` in `server` on `network`.0/24 (client .2, server
    /// .1), both ends up, and the client's host route to `serverAddress` through it (`metric` when given).
    static func uplink(client: String, _ clientDevice: String, server: String, _ serverDevice: String,
                       network: String, serverAddress: String, metric: Int? = nil) -> [String] {
        [
            "ip link add \(clientDevice) netns \(client) type veth peer name \(serverDevice) netns \(server)",
            "ip -n \(client) address add \(network).2/24 dev \(clientDevice)",
            "ip -n \(server) address add \(network).1/24 dev \(serverDevice)",
            "ip -n \(client) link set \(clientDevice) up",
            "ip -n \(server) link set \(serverDevice) up",
            "ip -n \(client) route add \(serverAddress)/32 via \(network).1 dev \(clientDevice)" + (metric.map { " metric \($0)" } ?? ""),
        ]
    }

    /// Kills whatever still runs in `namespace`, then deletes it; run best effort (a teardown goes on past failures).
    static func removal(of namespace: String) -> [String] {
        ["ip netns pids \(namespace) | xargs -r kill -9", "ip netns del \(namespace)"]
    }
}
