package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/spillway/spillway/internal/units"
	"github.com/spillway/spillway/persist"
)

func imageCommand(t *term) *cli.Command {
	return &cli.Command{
		Name:  "image",
		Usage: "import, list and remove clean base images",
		Subcommands: []*cli.Command{
			{
				Name:      "import",
				Usage:     "import an image from a directory, a .tar/.tar.gz file, or - (a tar on stdin)",
				ArgsUsage: "NAME SOURCE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "max-bytes", Usage: "bytes the import may write; holes of sparse files are free (default: the free space less 10%)"},
					&cli.Int64Flag{Name: "max-files", Usage: "entries the import may create, directories included", DefaultText: thousands(persist.DefaultImportMaxFiles) + ", or 90% of the free inodes if fewer"},
				},
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 2, "NAME SOURCE"); err != nil {
						return err
					}
					o, err := imageImportFlags(c)
					if err != nil {
						return err
					}
					return runImageImport(c.Context, o, globals(c), t)
				},
			},
			{
				Name:   "ls",
				Usage:  "list images",
				Flags:  []cli.Flag{jsonFlag(t)},
				Action: func(c *cli.Context) error { return runImageLs(c.Context, globals(c), t) },
			},
			{
				Name:      "rm",
				Usage:     "remove an image no sandbox uses",
				ArgsUsage: "NAME",
				Action: func(c *cli.Context) error {
					if err := needArgs(c, 1, "NAME"); err != nil {
						return err
					}
					return runImageRm(c.Context, imageRmOptions{Name: c.Args().Get(0)}, globals(c), t)
				},
			},
		},
	}
}

// imageImportOptions are the options of image import.
type imageImportOptions struct {
	Name   string
	Source string // a directory, a tar file, or "-" for stdin
	Limits persist.ImportLimits
}

// imageImportFlags parses the arguments and flags of image import.
func imageImportFlags(c *cli.Context) (imageImportOptions, error) {
	o := imageImportOptions{Name: c.Args().Get(0), Source: c.Args().Get(1)}
	if c.IsSet("max-bytes") {
		n, err := units.ParseSize(c.String("max-bytes"))
		if err != nil {
			return o, usageError("--max-bytes: %v", err)
		}
		if n <= 0 {
			return o, usageError("--max-bytes must be more than 0")
		}
		o.Limits.MaxBytes = n
	}
	if c.IsSet("max-files") {
		if o.Limits.MaxFiles = c.Int64("max-files"); o.Limits.MaxFiles <= 0 {
			return o, usageError("--max-files must be at least 1")
		}
	}
	return o, nil
}

func runImageImport(ctx context.Context, o imageImportOptions, g globalOptions, t *term) error {
	src := persist.ImageSource{Limits: o.Limits}
	imgName, source := o.Name, o.Source
	if source == "-" {
		src.Tar = t.in
	} else {
		fi, err := os.Stat(source)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // it names source again
			}
			return fmt.Errorf("image source %s: %w", source, err)
		}
		if fi.IsDir() {
			src.Dir = source
		} else {
			f, err := os.Open(source)
			if err != nil {
				return err
			}
			defer f.Close()
			src.Tar = f
		}
	}
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		img, err := e.ImportImage(ctx, imgName, src)
		if err != nil {
			return err
		}
		fmt.Fprintf(t.out, "imported image %s: %s, %s\n", img.Name, count(img.Files, "file"), units.FormatSize(img.Bytes))
		return nil
	})
}

type imageJSON struct {
	Name    string    `json:"name"`
	Files   int64     `json:"files"`
	Bytes   int64     `json:"bytes"`
	Created time.Time `json:"created"`
	Digest  string    `json:"digest,omitempty"` // the imported tree's sha256 (ledgers since digests are kept)
}

// imageRmOptions are the options of image rm.
type imageRmOptions struct{ Name string }

func runImageRm(ctx context.Context, o imageRmOptions, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		if err := e.RemoveImage(ctx, o.Name); err != nil {
			return err
		}
		fmt.Fprintf(t.out, "removed image %s\n", o.Name)
		return nil
	})
}

func runImageLs(ctx context.Context, g globalOptions, t *term) error {
	return withEnv(ctx, g, t, func(e *persist.Env) error {
		imgs, err := e.Images()
		if err != nil {
			return err
		}
		if t.json {
			out := []imageJSON{}
			for _, i := range imgs {
				out = append(out, imageJSON{i.Name, i.Files, i.Bytes, i.Created, i.Digest})
			}
			return t.printJSON(out)
		}
		w := t.table()
		fmt.Fprintln(w, "NAME\tFILES\tSIZE\tCREATED")
		for _, i := range imgs {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", i.Name, i.Files, units.FormatSize(i.Bytes), i.Created.Format(time.RFC3339))
		}
		return w.Flush()
	})
}

// thousands writes n with a comma between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
