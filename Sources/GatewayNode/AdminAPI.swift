import Foundation
import GatewayIO
import GatewayProtocol

/// A read-only route under /api/v1/admin, for the shop's operator (the /admin/ page polls
/// `overview`; each part has its own route for scripts and monitoring). Shop key only.
enum AdminRoute: Equatable {
    case overview
    case part(AdminPart)

    var parts: [AdminPart] {
        switch self {
        case .overview: AdminPart.allCases
        case .part(let part): [part]
        }
    }
}

extension Node {
    /// The operators' view in Redis (Store/AdminStore.swift); a value type over the node's link.
    var adminStore: any AdminStore { RedisAdminStore(redis: redis, log: { [weak self] in self?.log($0) }) }

    /// Reads the nodes' stats (and the muted groups' mutes when asked for) and answers the
    /// parts of `route`. Answers are never cached: they carry shop data.
    func adminRequest(_ request: HTTPRequest, _ route: AdminRoute) {
        let parts = route.parts
        let nowMs = now
        let store = adminStore
        store.board(keepMs: AdminStats.keepMs, nowMs: nowMs, groups: AdminStats.mutedGroupCandidates) { [weak self] result in
            guard let self else { return }
            let board: AdminBoard
            switch result {
            case .failure(let error): return self.fail(request, error)
            case .success(let b): board = b
            }
            var report = AdminReport(view: ClusterView(board, liveWithinMs: AdminStats.liveWithinMs))
            for node in report.view.unreadable { self.log("admin: unreadable stats of node \(node)") }
            guard parts.contains(.groups) else { return self.adminAnswer(request, report.json(parts)) }
            let candidates = report.view.groupsToRead(indexed: board.mutedGroups, limit: AdminStats.groups)
            guard !candidates.isEmpty else {
                report.groups = report.view.groups(muted: [], limit: AdminStats.groups)
                return self.adminAnswer(request, report.json(parts))
            }
            store.mutes(groups: candidates, nowMs: nowMs, limit: AdminStats.mutesPerGroup) { [weak self] result in
                guard let self else { return }
                switch result {
                case .failure(let error):
                    self.fail(request, error)
                case .success(let mutes):
                    let muted = zip(candidates, mutes).map { (product: $0.0, mutes: $0.1) }
                    report.groups = report.view.groups(muted: muted, limit: AdminStats.groups)
                    self.adminAnswer(request, report.json(parts))
                }
            }
        }
    }

    private func adminAnswer(_ request: HTTPRequest, _ json: JSON) {
        var out: [UInt8] = []
        json.write(into: &out)
        request.respond(status: 200, body: out, headers: [("Cache-Control", "no-store")])
    }
}
