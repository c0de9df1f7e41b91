// SPDX-License-Identifier: Apache-2.0
// Copyright 2026 The socksplice Authors

package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Chart geometry: 900x500 px at 96 dpi. The legend gets its own column on
// the right so it never hides a bar.
const (
	chartDPI      = 96
	chartWidthPx  = 900
	chartHeightPx = 500
	legendWidth   = vg.Length(110)
)

// pathColors keeps a path's colour the same in every chart, so readers can
// compare rr and stream at a glance.
var pathColors = map[string]color.Color{
	PathTCP:      color.RGBA{R: 128, G: 128, B: 128, A: 255},
	PathSockmap:  color.RGBA{R: 31, G: 119, B: 180, A: 255},
	PathSplice:   color.RGBA{R: 255, G: 127, B: 14, A: 255},
	PathSpliceBP: color.RGBA{R: 214, G: 39, B: 40, A: 255},
	PathUnix:     color.RGBA{R: 44, G: 160, B: 44, A: 255},
	PathSMC:      color.RGBA{R: 148, G: 103, B: 189, A: 255},
	// the sockperf mode's
	PathSpliceBP10: color.RGBA{R: 255, G: 187, B: 120, A: 255},
	PathToolTCP:    color.RGBA{R: 199, G: 199, B: 199, A: 255},
}

// extraColors serve paths the palette above does not know.
var extraColors = []color.Color{
	color.RGBA{R: 140, G: 86, B: 75, A: 255},
	color.RGBA{R: 227, G: 119, B: 194, A: 255},
	color.RGBA{R: 188, G: 189, B: 34, A: 255},
	color.RGBA{R: 23, G: 190, B: 207, A: 255},
}

// chartName is the file a (kind, topology) chart is written to; markdown
// links the same name.
func chartName(kind, topo string) string {
	return kind + "-" + topo + ".png"
}

// hasChartData says whether a chart is drawn for kind/topo: only points
// that ran are plotted, so an all-error topology gets no chart.
func hasChartData(points []Point, kind, topo string) bool {
	for _, p := range points {
		if p.Kind == kind && p.Topology == topo && p.Err == "" {
			return true
		}
	}
	return false
}

// writeCharts writes rr-<topology>.png and stream-<topology>.png for every
// topology with data and returns the file names (not paths) written.
func writeCharts(dir string, rep *Report) ([]string, error) {
	var names []string
	for _, k := range []struct {
		kind   string
		points []Point
		ylabel string
		ytick  func(float64) string
		title  string
	}{
		{"rr", rep.RR, "transactions/s (median; whiskers min–max)", axisCount, "request/response"},
		{"stream", rep.Stream, "Gbit/s (median; whiskers min–max)", axisNumber, "stream"},
	} {
		for _, topo := range topologies(k.points) {
			if !hasChartData(k.points, k.kind, topo) {
				continue
			}
			name := chartName(k.kind, topo)
			title := fmt.Sprintf("%s, %s: higher is better", k.title, topo)
			xlabel := "request = response size"
			if k.kind == "stream" {
				xlabel = "write size"
			}
			if err := drawChart(filepath.Join(dir, name), k.points, k.kind, topo, title, xlabel, k.ylabel, k.ytick); err != nil {
				return names, fmt.Errorf("%s: %w", name, err)
			}
			names = append(names, name)
		}
	}
	return names, nil
}

// series is one path's bars across the size groups; NaN marks a size the
// path has no good number for.
type series struct {
	path          string
	color         color.Color
	med, min, max []float64
}

// groupedBars draws bars side by side per x category, with min–max
// whiskers. It is a plotter of its own because plotter.BarChart offsets
// in canvas units, which error bars cannot follow.
type groupedBars struct {
	n      int // categories
	series []series
}

func (g *groupedBars) Plot(c draw.Canvas, plt *plot.Plot) {
	trX, trY := plt.Transforms(&c)
	step := trX(1) - trX(0)
	groupW := step * 0.8
	barW := groupW / vg.Length(len(g.series))
	whisker := draw.LineStyle{Color: color.Black, Width: vg.Points(0.8)}
	outline := draw.LineStyle{Color: color.Black, Width: vg.Points(0.3)}
	for si, s := range g.series {
		for i := 0; i < g.n; i++ {
			v := s.med[i]
			if math.IsNaN(v) {
				continue
			}
			x0 := trX(float64(i)) - groupW/2 + barW*vg.Length(si)
			x1 := x0 + barW
			y0, y1 := trY(0), trY(v)
			rect := []vg.Point{{X: x0, Y: y0}, {X: x0, Y: y1}, {X: x1, Y: y1}, {X: x1, Y: y0}}
			c.FillPolygon(s.color, c.ClipPolygonY(rect))
			c.StrokeLines(outline, c.ClipLinesY(append(rect, rect[0]))...)
			// A whisker only where the runs actually spread.
			if s.max[i] > s.min[i] {
				xm := (x0 + x1) / 2
				lo, hi := trY(s.min[i]), trY(s.max[i])
				capW := barW / 4
				c.StrokeLines(whisker, c.ClipLinesY([]vg.Point{{X: xm, Y: lo}, {X: xm, Y: hi}})...)
				c.StrokeLine2(whisker, xm-capW, lo, xm+capW, lo)
				c.StrokeLine2(whisker, xm-capW, hi, xm+capW, hi)
			}
		}
	}
}

func (g *groupedBars) DataRange() (xmin, xmax, ymin, ymax float64) {
	ymax = 0
	for _, s := range g.series {
		for i := range s.med {
			if !math.IsNaN(s.med[i]) {
				ymax = math.Max(ymax, math.Max(s.med[i], s.max[i]))
			}
		}
	}
	if ymax == 0 {
		ymax = 1
	}
	return -0.5, float64(g.n) - 0.5, 0, ymax
}

// swatch is a legend thumbnail: a filled square in the path's colour.
type swatch struct{ c color.Color }

func (s swatch) Thumbnail(c *draw.Canvas) {
	c.FillPolygon(s.c, c.ClipPolygonY([]vg.Point{
		{X: c.Min.X, Y: c.Min.Y}, {X: c.Min.X, Y: c.Max.Y},
		{X: c.Max.X, Y: c.Max.Y}, {X: c.Max.X, Y: c.Min.Y},
	}))
}

func drawChart(file string, points []Point, kind, topo, title, xlabel, ylabel string, ytick func(float64) string) error {
	var sel []Point
	for _, p := range points {
		if p.Kind == kind && p.Topology == topo {
			sel = append(sel, p)
		}
	}
	// Sizes include errored points so a size that failed everywhere still
	// shows as an empty group rather than vanishing.
	sizes := sizesOf(sel)
	g := &groupedBars{n: len(sizes)}
	extra := 0
	for _, path := range pathsOf(sel) {
		s := series{path: path, color: pathColors[path]}
		if s.color == nil {
			s.color = extraColors[extra%len(extraColors)]
			extra++
		}
		has := false
		for _, size := range sizes {
			p, ok := findPoint(sel, kind, topo, path, size)
			if !ok || p.Err != "" {
				s.med = append(s.med, math.NaN())
				s.min = append(s.min, math.NaN())
				s.max = append(s.max, math.NaN())
				continue
			}
			st := p.TPS
			if kind == "stream" {
				st = p.Gbps
			}
			// A NaN or Inf would wreck the axis range; a bad bound just
			// loses its whisker.
			if !finite(st.Median) {
				st.Median = math.NaN()
			}
			if !finite(st.Min) || st.Min > st.Median {
				st.Min = st.Median
			}
			if !finite(st.Max) || st.Max < st.Median {
				st.Max = st.Median
			}
			s.med = append(s.med, st.Median)
			s.min = append(s.min, st.Min)
			s.max = append(s.max, st.Max)
			has = true
		}
		if has {
			g.series = append(g.series, s)
		}
	}

	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	p.Add(&yGrid{}, g) // grid first so bars cover it
	labels := make([]string, len(sizes))
	for i, s := range sizes {
		labels[i] = formatSize(s)
	}
	p.NominalX(labels...)
	p.X.Min, p.X.Max = -0.5, float64(len(sizes))-0.5
	_, _, _, ymax := g.DataRange()
	p.Y.Min, p.Y.Max = 0, ymax*1.08 // headroom so the tallest whisker is not cut
	p.Y.Tick.Marker = plot.TickerFunc(func(lo, hi float64) []plot.Tick {
		return niceTicks(lo, hi, ytick)
	})
	p.Title.Padding = vg.Points(8)

	leg := plot.NewLegend()
	leg.Top, leg.Left = true, true
	leg.TextStyle.Font = font.From(plot.DefaultFont, vg.Points(11))
	leg.ThumbnailWidth = vg.Points(12)
	leg.Padding = vg.Points(4)
	for _, s := range g.series {
		leg.Add(s.path, swatch{s.color})
	}

	w := vg.Length(chartWidthPx) * vg.Inch / chartDPI
	h := vg.Length(chartHeightPx) * vg.Inch / chartDPI
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(chartDPI))
	dc := draw.New(img)
	p.Draw(draw.Crop(dc, vg.Points(4), -legendWidth, vg.Points(4), -vg.Points(6)))
	leg.Draw(draw.Crop(dc, w-legendWidth+vg.Points(10), 0, 0, -vg.Points(30)))

	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// yGrid draws light horizontal lines at the major y ticks: bars are easier
// to read against them than against the axis alone.
type yGrid struct{}

func (yGrid) Plot(c draw.Canvas, plt *plot.Plot) {
	_, trY := plt.Transforms(&c)
	ls := draw.LineStyle{Color: color.Gray{Y: 220}, Width: vg.Points(0.5)}
	for _, t := range plt.Y.Tick.Marker.Ticks(plt.Y.Min, plt.Y.Max) {
		if t.Label == "" {
			continue
		}
		y := trY(t.Value)
		c.StrokeLine2(ls, c.Min.X, y, c.Max.X, y)
	}
}

// niceTicks puts about six labelled ticks at 1, 2, 2.5 or 5 times a power
// of ten: the default ticker gives only three, too few to read bars by.
func niceTicks(lo, hi float64, label func(float64) string) []plot.Tick {
	if hi <= lo {
		return []plot.Tick{{Value: lo, Label: label(lo)}}
	}
	raw := (hi - lo) / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * mag
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ts []plot.Tick
	for i := math.Ceil(lo / step); i*step <= hi; i++ {
		v := i * step
		ts = append(ts, plot.Tick{Value: v, Label: label(v)})
		// An unlabelled minor tick halfway helps the eye between lines.
		if m := v + step/2; m <= hi {
			ts = append(ts, plot.Tick{Value: m})
		}
	}
	return ts
}

// axisNumber prints a tick value without float noise or trailing zeros.
func axisNumber(v float64) string {
	return fmt.Sprintf("%.6g", v)
}

// axisCount is axisNumber with an SI suffix: "40k", "1.5M".
func axisCount(v float64) string {
	switch {
	case math.Abs(v) >= 1e6:
		return axisNumber(v/1e6) + "M"
	case math.Abs(v) >= 1e3:
		return axisNumber(v/1e3) + "k"
	}
	return axisNumber(v)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
