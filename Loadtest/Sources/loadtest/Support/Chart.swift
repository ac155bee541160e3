import Foundation

/// One line of a chart: (seconds since start, value) points.
struct ChartSeries {
    var name: String
    var points: [(x: Double, y: Double)]
    var color: String
    var dashed = false
}

/// A panel of a chart, one y axis.
struct ChartPanel {
    var title: String
    var unit: String
    var series: [ChartSeries]
}

/// A moment worth a vertical line (storm, price drop).
struct ChartEvent: Codable {
    var t: Double
    var label: String
}

/// Hand-written SVG line charts (no dependencies): stacked panels sharing the time
/// axis, a legend per panel, and marked events across all panels.
enum SVGChart {
    static let palette = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf", "#bcbd22"]

    static func render(title: String, panels: [ChartPanel], events: [ChartEvent] = [], width: Int = 960, panelHeight: Int = 240) -> String {
        let left = 70.0, right = 20.0, top = 40.0, gap = 50.0, bottom = 40.0
        let w = Double(width), ph = Double(panelHeight)
        let height = top + Double(panels.count) * ph + Double(max(0, panels.count - 1)) * gap + bottom
        let xs = panels.flatMap { $0.series.flatMap { $0.points.map(\.x) } } + events.map(\.t)
        let xMax = niceCeil(max(xs.max() ?? 1, 1), steps: 10)
        let xMin = 0.0
        let plotW = w - left - right
        func px(_ x: Double) -> Double { left + (x - xMin) / (xMax - xMin) * plotW }

        var out = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(width)" height="\(Int(height))" viewBox="0 0 \(width) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(fmt(w / 2))" y="22" text-anchor="middle" font-size="15" font-weight="bold">\(escape(title))</text>

        """
        for (i, panel) in panels.enumerated() {
            let y0 = top + Double(i) * (ph + gap)
            let ys = panel.series.flatMap { $0.points.map(\.y) }.filter { $0.isFinite }
            let yMax = niceCeil(max(ys.max() ?? 1, 1e-9))
            func py(_ y: Double) -> Double { y0 + ph - min(max(y, 0), yMax) / yMax * ph }
            out += ##"<text x="\##(fmt(left))" y="\##(fmt(y0 - 8))" font-weight="bold">\##(escape(panel.title))</text>"## + "\n"
            out += ##"<rect x="\##(fmt(left))" y="\##(fmt(y0))" width="\##(fmt(plotW))" height="\##(fmt(ph))" fill="none" stroke="#999"/>"## + "\n"
            // Horizontal grid and y labels.
            let yStep = niceStep(yMax / 5)
            var v = 0.0
            while v <= yMax + yStep / 1000 {
                let y = py(v)
                out += ##"<line x1="\##(fmt(left))" y1="\##(fmt(y))" x2="\##(fmt(left + plotW))" y2="\##(fmt(y))" stroke="#e5e5e5"/>"## + "\n"
                out += ##"<text x="\##(fmt(left - 6))" y="\##(fmt(y + 4))" text-anchor="end">\##(label(v))</text>"## + "\n"
                v += yStep
            }
            out += ##"<text transform="translate(\##(fmt(16)),\##(fmt(y0 + ph / 2))) rotate(-90)" text-anchor="middle">\##(escape(panel.unit))</text>"## + "\n"
            // Time axis ticks.
            let xStep = niceStep(xMax / 10)
            var x = 0.0
            while x <= xMax + xStep / 1000 {
                out += ##"<line x1="\##(fmt(px(x)))" y1="\##(fmt(y0 + ph))" x2="\##(fmt(px(x)))" y2="\##(fmt(y0 + ph + 4))" stroke="#999"/>"## + "\n"
                out += ##"<text x="\##(fmt(px(x)))" y="\##(fmt(y0 + ph + 16))" text-anchor="middle">\##(label(x))</text>"## + "\n"
                x += xStep
            }
            for (k, e) in events.enumerated() {
                out += ##"<line x1="\##(fmt(px(e.t)))" y1="\##(fmt(y0))" x2="\##(fmt(px(e.t)))" y2="\##(fmt(y0 + ph))" stroke="#555" stroke-dasharray="2,3"/>"## + "\n"
                if i == 0 {
                    out += ##"<text x="\##(fmt(px(e.t) + 3))" y="\##(fmt(y0 + 12 + Double(k % 3) * 12))" font-size="10" fill="#555">\##(escape(e.label))</text>"## + "\n"
                }
            }
            for s in panel.series where !s.points.isEmpty {
                let path = s.points.filter { $0.y.isFinite }.map { "\(fmt(px($0.x))),\(fmt(py($0.y)))" }.joined(separator: " ")
                out += ##"<polyline fill="none" stroke="\##(s.color)" stroke-width="1.6"\##(s.dashed ? ##" stroke-dasharray="5,3""## : "") points="\##(path)"/>"## + "\n"
            }
            // Legend, top right inside the panel.
            var lx = left + plotW - 10
            for s in panel.series.reversed() {
                let textW = Double(s.name.count) * 7.2
                lx -= textW + 34
                out += ##"<line x1="\##(fmt(lx))" y1="\##(fmt(y0 + 14))" x2="\##(fmt(lx + 18))" y2="\##(fmt(y0 + 14))" stroke="\##(s.color)" stroke-width="2"\##(s.dashed ? ##" stroke-dasharray="5,3""## : "")/>"## + "\n"
                out += ##"<text x="\##(fmt(lx + 22))" y="\##(fmt(y0 + 18))">\##(escape(s.name))</text>"## + "\n"
            }
        }
        out += ##"<text x="\##(fmt(left + plotW / 2))" y="\##(fmt(height - 8))" text-anchor="middle">seconds since start</text>"## + "\n"
        out += "</svg>\n"
        return out
    }

    /// 1, 2 or 5 times a power of ten, at least `raw`.
    static func niceStep(_ raw: Double) -> Double {
        guard raw > 0, raw.isFinite else { return 1 }
        let mag = pow(10, floor(log10(raw)))
        for m in [1.0, 2, 5, 10] where m * mag >= raw { return m * mag }
        return 10 * mag
    }

    static func niceCeil(_ v: Double, steps: Double = 5) -> Double {
        guard v > 0, v.isFinite else { return 1 }
        let step = niceStep(v / steps)
        return (v / step).rounded(.up) * step
    }

    private static func label(_ v: Double) -> String {
        if v == 0 { return "0" }
        if abs(v) >= 10_000 { return String(format: "%.0fk", v / 1000) }
        if abs(v) >= 10 || v == v.rounded() { return String(format: "%.0f", v) }
        if abs(v) >= 1 { return String(format: "%.1f", v) }
        return String(format: "%.2g", v)
    }

    private static func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
