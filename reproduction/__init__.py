"""CPU-sized reproduction of the paper's Fashion-MNIST experiments (`make reproduce`) and its report."""
