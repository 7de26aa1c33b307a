module github.com/sluicelib/sluice/bindings/go

go 1.19
