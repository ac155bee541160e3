import Foundation

/// Tells machine limits (descriptors, ports, memory, conntrack) apart from gateway
/// limits, before and after a run.
enum Preflight {
    static func check(connections n: Int, nodes k: Int, sourceAddresses: Bool = true) -> [String] {
        var out: [String] = []
        let ports = Machine.portsPerAddress
        if !sourceAddresses && (n + k - 1) / k > ports - 1000 {
            out.append("machine: without source addresses every connection to a node comes from 127.0.0.1, which has \(Fmt.int(ports)) ephemeral ports; \(Fmt.int((n + k - 1) / k)) per node will run out (drop --no-source-addresses)")
        }
        let hard = Machine.fdLimit().hard
        let perNode = (n + k - 1) / k
        let nodeCap = hard - 40
        if perNode > nodeCap {
            out.append("machine: each node would hold \(Fmt.int(perNode)) connections, but one process may hold at most \(Fmt.int(hard)) descriptors (ulimit -Hn), so a node tops out near \(Fmt.int(nodeCap)); use --nodes \((n + nodeCap - 1) / nodeCap) or more")
        }
        let mem = Machine.memInfo()
        // Gateway, load generator and kernel socket buffers on both ends, generously.
        let need = n * 40 * 1024
        if need > mem.available {
            out.append("machine: \(Fmt.int(n)) connections may need about \(Fmt.gib(need)) (gateway, load generator and kernel), only \(Fmt.gib(mem.available)) available")
        }
        if let ct = Machine.conntrack(), ct.count + n > ct.max {
            out.append("machine: the connection-tracking table holds \(Fmt.int(ct.max)) entries (\(Fmt.int(ct.count)) in use); \(Fmt.int(n)) more connections overflow it (sysctl net.netfilter.nf_conntrack_max)")
        }
        return out
    }

    /// Checked every second while running; a reason to stop early.
    static func runtimeLimit(cluster: Cluster) -> String? {
        let mem = Machine.memInfo()
        if mem.available < max(256 << 20, mem.total / 50) {
            return "machine: memory nearly exhausted (\(Fmt.gib(mem.available)) available); stopped early"
        }
        return nil
    }

    /// Whether a failure reason names a resource of this machine rather than the gateway.
    static func machineCause(_ reason: String) -> String? {
        let l = reason.lowercased()
        if l.contains("too many open files") || l.contains("emfile") || l.contains("enfile") { return "descriptors" }
        if l.contains("address not available") || l.contains("assign requested address") || l.contains("eaddrnotavail")
            || l.contains("address already in use") || l.contains("bind") { return "ephemeral ports" }
        if l.contains("no buffer space") || l.contains("cannot allocate") || l.contains("enobufs") { return "memory" }
        return nil
    }

    static func explain(failures: [String: Int], drops: [String: Int], nodes: [ConnectionsResults.NodeResult],
                        aborted: String?, logComplaints: [String]) -> [String] {
        var out: [String] = []
        for n in nodes {
            if let open = n.openFiles, let limit = n.fdLimit, open >= limit - 20 {
                out.append("machine: node \(n.name) reached its descriptor limit (\(Fmt.int(open)) of \(Fmt.int(limit)) open): one process may hold at most \(Fmt.int(limit)) descriptors; spread the connections over more nodes")
            }
        }
        var machine: [String: Int] = [:]
        var other: [String: Int] = [:]
        for (reason, count) in failures.merging(drops, uniquingKeysWith: +) {
            if let cause = machineCause(reason) { machine[cause, default: 0] += count } else { other[reason, default: 0] += count }
        }
        for (cause, count) in machine.sorted(by: { $0.value > $1.value }) {
            out.append("machine: \(Fmt.int(count)) connections failed for lack of \(cause) on the load-generator side")
        }
        let otherTotal = other.values.reduce(0, +)
        if otherTotal > 0 {
            let top = other.sorted { $0.value > $1.value }.prefix(3).map { "\($0.value) x \($0.key)" }.joined(separator: "; ")
            let nodeFull = out.contains { $0.hasPrefix("machine: node") }
            out.append("\(nodeFull ? "machine (node descriptor limit)" : "gateway"): \(Fmt.int(otherTotal)) connections failed or dropped: \(top)")
        }
        out += logComplaints.map { "machine: node log says: \($0)" }
        if let aborted { out.append(aborted) }
        return out
    }
}
