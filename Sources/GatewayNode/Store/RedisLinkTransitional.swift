import GatewayIO

/// Transitional, for callers not yet moved to the store protocols (they pass `keys: []` or no
/// key): delete once none is left. On a cluster such a call goes to the owner of its first
/// argument after the command name (the key of most commands), and a MOVED is followed.
extension RedisLink {
    func send(_ args: [RedisArgument], _ callback: @escaping (RedisReply) -> Void) {
        let key = args.count >= 2 ? String(decoding: args[1].redisBytes, as: UTF8.self) : nil
        send(args, key: key, callback)
    }

    func eval(_ source: String, keys: [String], args: [RedisArgument], _ callback: @escaping (RedisReply) -> Void) {
        run(LuaScript(name: "inline", source: source), keys: keys, args: args, callback)
    }

    func awaitReplicas(_ replicas: Int, timeoutMs: Int, _ done: @escaping (Bool) -> Void) {
        awaitReplicas(replicas, timeoutMs: timeoutMs, key: nil, done)
    }
}
