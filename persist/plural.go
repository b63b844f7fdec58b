package persist

import "fmt"

// plural is n and noun, the noun's plural form unless n is 1 ("1 file",
// "2 files"); plural is the noun with an s when "". Messages are for people:
// a count of one reads "1 change", not "1 changes" (cmd/spillway's count
// does the same for the command line).
func plural[N ~int | ~int32 | ~int64 | ~uint | ~uint32 | ~uint64](n N, noun string, pluralForm ...string) string {
	if n == 1 {
		return "1 " + noun
	}
	if len(pluralForm) > 0 {
		return fmt.Sprintf("%d %s", n, pluralForm[0])
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
