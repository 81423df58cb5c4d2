from appendq.cli import main

main(prog_name="appendq")
