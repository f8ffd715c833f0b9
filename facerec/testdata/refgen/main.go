// Command refgen writes the fixtures' pixels, decoded by facerec.Decode, as
// binary PPM files, so that reference.cjs feeds face-api exactly the pixels
// the Go engine sees (JPEG decoders differ by a level here and there). See
// ../README.md.
//
//	go run ./facerec/testdata/refgen OUTDIR IMAGE...
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/challenge-v3/challenge-v3/facerec"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: refgen OUTDIR IMAGE...")
		os.Exit(2)
	}
	for _, p := range os.Args[2:] {
		if err := write(os.Args[1], p); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

func write(dir, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	img, err := facerec.Decode(b, facerec.DefaultLimits)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	name := strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)) + ".ppm"
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "P6\n%d %d\n255\n", img.Width(), img.Height())
	for y := 0; y < img.Height(); y++ {
		for x := 0; x < img.Width(); x++ {
			r, g, b := img.Pixel(x, y)
			w.Write([]byte{r, g, b})
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
