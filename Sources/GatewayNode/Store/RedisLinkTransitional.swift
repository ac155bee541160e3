import GatewayIO

/// Transitional, for callers not yet moved to the store protocols (they pass `keys: []` or no
/// key): delete once none is left. On a cluster such a call goes to the owner of its first
/// argument after the command name (the key of most commands), and a MOVED is followed.
extension RedisLink {
    func send(_ args: [RedisArgument], _ callback: @escaping (RedisReply) -> Void) {
        let key = args.count >= 2 ? String(decoding: args[1].redisBytes, as: UTF8.self) : nil
        send(args, key: key, callback)
    }

    /// A script that builds its key names itself (`keys: []`) is sent, on a cluster, to the
    /// owner of its first argument: the channel name (`group:p1` hashes like `gw:{group:p1}:meta`).
    func eval(_ source: String, keys: [String], args: [RedisArgument], _ callback: @escaping (RedisReply) -> Void) {
        let script = LuaScript(name: "inline", source: source)
        guard keys.isEmpty, isCluster, let first = args.first else { return run(script, keys: keys, args: args, callback) }
        let tail: [RedisArgument] = [0] + args
        send(["EVALSHA", script.sha] + tail, key: String(decoding: first.redisBytes, as: UTF8.self)) { [weak self] reply in
            guard case .error(let e) = reply, e.hasPrefix("NOSCRIPT"), let self else { return callback(reply) }
            self.send(["EVAL", script.source] + tail, key: String(decoding: first.redisBytes, as: UTF8.self), callback)
        }
    }

    func awaitReplicas(_ replicas: Int, timeoutMs: Int, _ done: @escaping (Bool) -> Void) {
        awaitReplicas(replicas, timeoutMs: timeoutMs, key: nil, done)
    }
}
