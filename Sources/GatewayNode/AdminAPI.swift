import Foundation
import GatewayIO
import GatewayProtocol
import OrderCore

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
        let withRefunds = { [weak self] (report: AdminReport) in
            guard let self else { return }
            guard parts.contains(.refunds) else { return self.adminAnswer(request, report.json(parts)) }
            self.owedRefunds(store) { result in
                switch result {
                case .failure(let error): self.fail(request, error)
                case .success(let rows):
                    var report = report
                    report.refundRequired = rows
                    self.adminAnswer(request, report.json(parts))
                }
            }
        }
        // Read at each request, unlike the backlog: the operator wants the list as it is now.
        let answer = { [weak self] (report: AdminReport) in
            guard let self else { return }
            guard parts.contains(.webhooks) else { return withRefunds(report) }
            RedisWebhookStore(redis: self.redis, log: { [weak self] in self?.log($0) }).trouble(limit: AdminStats.retryingWebhooks) { result in
                switch result {
                case .failure(let error): self.fail(request, error)
                case .success(let trouble):
                    var report = report
                    report.webhookTrouble = trouble
                    withRefunds(report)
                }
            }
        }
        store.board(keepMs: AdminStats.keepMs, nowMs: nowMs, groups: AdminStats.mutedGroupCandidates) { [weak self] result in
            guard let self else { return }
            let board: AdminBoard
            switch result {
            case .failure(let error): return self.fail(request, error)
            case .success(let b): board = b
            }
            var report = AdminReport(view: ClusterView(board, liveWithinMs: AdminStats.liveWithinMs))
            // This node's latest reading (every 2 s): the backlog is cluster-wide.
            report.webhookBacklog = self.metrics.webhookBacklog
            report.webhookOldestSeconds = self.metrics.webhookOldestSeconds
            for node in report.view.unreadable { self.log("admin: unreadable stats of node \(node)") }
            guard parts.contains(.groups) else { return answer(report) }
            let candidates = report.view.groupsToRead(indexed: board.mutedGroups, limit: AdminStats.groups)
            guard !candidates.isEmpty else {
                report.groups = report.view.groups(muted: [], limit: AdminStats.groups)
                return answer(report)
            }
            store.mutes(groups: candidates, nowMs: nowMs, limit: AdminStats.mutesPerGroup) { [weak self] result in
                guard let self else { return }
                switch result {
                case .failure(let error):
                    self.fail(request, error)
                case .success(let mutes):
                    let muted = zip(candidates, mutes).map { (product: $0.0, mutes: $0.1) }
                    report.groups = report.view.groups(muted: muted, limit: AdminStats.groups)
                    answer(report)
                }
            }
        }
    }

    /// Keeps the refunds list (`StoreKeys.refundsOwed`) after a decision that owes or settles
    /// a payment. Best effort, in another slot than the payment: a lost write leaves a payment
    /// owed but unlisted (`GET /api/v1/payments/{id}` still shows it); a late one is dropped
    /// when the list is read.
    func indexRefunds(of decision: Decision) {
        for case .savePayment(let p) in decision.effects {
            switch p.status {
            case .refundRequired: adminStore.noteRefund(payment: p.id, sinceMs: p.updatedAt)
            case .refunded: adminStore.noteRefund(payment: p.id, sinceMs: nil)
            case .created, .succeeded, .failed: break
            }
        }
    }

    /// The listed payments still `refund_required`, each read from its own record; entries
    /// that moved on (or whose record is gone) are taken off the list.
    private func owedRefunds(_ store: any AdminStore, _ done: @escaping (StoreResult<[JSON]>) -> Void) {
        store.owedRefunds(limit: AdminStats.refunds) { [weak self] listed in
            guard let self else { return }
            switch listed {
            case .failure(let error): return done(.failure(error))
            case .success(let ids):
                let gather = Gather<Payment?>(ids.count) { loaded in
                    done(loaded.map { payments in
                        var rows: [JSON] = []
                        for (id, payment) in zip(ids, payments) {
                            if let payment, payment.status == .refundRequired { rows.append(payment.json) } else {
                                store.noteRefund(payment: id, sinceMs: nil)
                            }
                        }
                        return rows
                    })
                }
                for (i, id) in ids.enumerated() {
                    self.orderStore.load(.payment(id)) { gather.report(i, $0.map { $0.payment?.id == id ? $0.payment : nil }) }
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
