package main

import (
	"fmt"
	"io"
	"strings"
)

// progressBar redraws one terminal line: "[#####.....]  5/10 label".
type progressBar struct {
	w     io.Writer
	total int
	label string
	last  int
}

const barWidth = 30

func (p *progressBar) draw(done int) {
	p.last = done
	filled := 0
	if p.total > 0 {
		filled = min(done, p.total) * barWidth / p.total
	}
	fmt.Fprintf(p.w, "\r[%s%s] %*d/%d %s", strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled),
		len(fmt.Sprint(p.total)), done, p.total, p.label)
}

// done ends the bar's line.
func (p *progressBar) done() { fmt.Fprintln(p.w) }
