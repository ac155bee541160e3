import ArgumentParser

/// The gateway's load tester: each scenario spawns (or targets) gateway nodes, drives
/// them from worker processes, prints one progress line a second and writes a JSON report.
struct LoadTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loadtest",
        abstract: "Load tests for the card-shop gateway (traffic only to 127.0.0.0/8).",
        subcommands: [ConnectionsCommand.self, FanoutCommand.self, OrdersCommand.self, PriceDropCommand.self, FlashSaleCommand.self, HolidayPeakCommand.self, ChaosCommand.self, WorkerCommand.self])
}

LoadTest.main()
