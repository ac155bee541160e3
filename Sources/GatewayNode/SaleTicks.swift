import OrderCore

extension Node {
    /// A due `sale:<product>/<sale>` timer. Placeholder until Sales.swift (NODE) replaces it:
    /// the store's tick moves or removes the timer itself.
    func tickSale(product: String, sale: String, timer: DueTimer, done: @escaping () -> Void) {
        guard let sales = orderStore.sales else { return done() }
        sales.tickSale(product: product, sale: sale) { _ in done() }
    }
}
